"""Training: the loop, checkpoints, run directories, devices and sessions."""
