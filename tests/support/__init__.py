"""Helpers the tests share: temp fleets, real worker processes, a real sshd, a host test bed, fake agent CLIs."""
