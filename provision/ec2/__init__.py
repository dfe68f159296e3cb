"""The EC2 build lifecycle: source AMI -> builder -> provision -> image -> publish -> copies.

boto3 lives here and nowhere else; this package runs on the build host only (the boot agent does
not install it). Its modules, from the bottom up:

* ``plan``: pure: options, the resolved plan, the result, the builder's address, validation;
* ``shapes``: pure: tags, filters, the SSH rule, the ``run_instances`` request;
* ``manifest``: the Packer-style manifest (pure entry and merge; atomic write);
* ``api``: sessions, clients, the call wrapper (``ClientError`` -> ``AwsError`` with a hint);
* ``waits``: bounded waits on instance, image and SSH state;
* ``cleanup``: the LIFO registry and the removals that treat "already gone" as success;
* ``images``: source image (and its owner), instance type, publishing, IMDSv2, tags;
* ``imaging``: the build's images: snapshots tagged at once, copies, ``force`` replacing only after;
* ``keys``: the builder's login key; ``launch``: key pair, security group, builder instance;
* ``signals``: SIGTERM and SIGHUP handled as Ctrl-C for the length of a build;
* ``build``: :func:`~provision.ec2.build.build`, the stages strung together;
* ``builder``: the builder updated and provisioned over SSH, and the build on AWS as ``invoke build.ami`` runs it.
"""
