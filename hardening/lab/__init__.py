"""The lab: a vulnerable Debian 12 image like an old AMI, booted under QEMU as a new instance."""
