"""What the service tells people: click-through rates (``ctr``), off-policy evaluation
(``evaluate``), one ad's stats (``adstats``), the dashboard's data (``dashboard_data``) and
the health checks behind ``flask status`` (``health``)."""
