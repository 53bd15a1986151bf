"""Measurement sources behind one Protocol (`base.DomainSource` / `base.HostSource`).

`libvirt` imports libvirt-python, so import it only where it is used."""
