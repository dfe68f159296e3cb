"""The EC2 build lifecycle: source AMI -> builder -> provision -> image -> publish -> copies.

boto3 lives here and nowhere else; this package runs on the build host only (the boot agent does
not install it). Its modules, from the bottom up:

* ``plan``: pure: options, the resolved plan, the result, the builder's address, validation;
* ``shapes``: pure: tags, filters, the SSH rule, the ``run_instances`` request;
* ``manifest``: the Packer-style manifest (pure entry and merge; atomic write);
* ``api``: sessions, clients, the call wrapper (``ClientError`` -> ``AwsError`` with a hint);
* ``waits``: bounded waits on instance, image and SSH state;
* ``cleanup``: the LIFO registry and the removals that treat "already gone" as success;
* ``images``: source image, instance type, publishing, IMDSv2, tags;
* ``keys``: the builder's login key; ``launch``: key pair, security group, builder instance;
* ``build``: :func:`~provision.ec2.build.build`, the stages strung together;
* ``builder``: the builder provisioned over SSH, and the build on AWS as ``invoke build.ami`` runs it.
"""
