"""Infrastructure every part uses: configuration, run directories and provenance, devices, footprint, figures."""
