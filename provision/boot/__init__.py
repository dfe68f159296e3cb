"""The boot agent: the jobs that run on the instance at every boot or once per instance.

Installed into the image with one systemd unit per job, it runs under the distribution's
``/usr/bin/python3`` with the standard library only::

    python3 -m provision.boot run hostname
    python3 -m provision.boot list

* :mod:`.context` — a job's description (:class:`~.context.BootJob`) and what it is given to act
  (:class:`~.context.BootContext`);
* :mod:`.jobs` — the job table: each job's function and its unit's ordering;
* :mod:`.runner` — reads the metadata, runs one job (per-instance jobs once per instance-id), records it;
* :mod:`.units` — renders a job's systemd unit;
* :mod:`.agent` — the provisioning step that installs the agent, its settings and its units.
"""
