"""The simulation: a local privileged-enough Docker container plays an EC2 instance, moto plays EC2."""
