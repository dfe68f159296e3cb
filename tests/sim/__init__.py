"""The Docker tier: against an instance of the AMI the session builds."""
