"""Who does the scanning: a queue worker's life (``worker``), the steps for one claimed
file (``claims``), and where they run (``executor``: this process, or the actors of a
Ray cluster in ``cluster`` and ``cluster_scan``)."""
