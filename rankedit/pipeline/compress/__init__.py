"""`rankedit compress`: the command (``command``), its families (``families``), the search on a grid
(``bisect``), one candidate (``candidates``) and what it writes (``writing``)."""
