"""Several instances of the AMI as one cloud: join tokens, the joiner's user data, the cluster's shape."""
