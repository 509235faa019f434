"""``nationmap serve``: the products as a web map (:mod:`nationmap.serve.app`)."""
