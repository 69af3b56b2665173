"""The simulation behind ``bench/simulate.py``: a city of job ads with hidden true rates
(``world``), the service's bandit run in process (``fast``), the real processes driven
over HTTP (``real``), and the report both write (``report``)."""
