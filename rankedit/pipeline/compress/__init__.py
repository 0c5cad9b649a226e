"""`rankedit compress`: the command (``command``), its families (``budgets``), the search on a grid
(``bisect``), one candidate (``candidates``) and what it writes (``writing``)."""
