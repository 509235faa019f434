"""Operations: the monthly refresh (lock, versioned publication, ``latest``), run history read from
the run manifests, and Ray Job submission with token authentication."""
