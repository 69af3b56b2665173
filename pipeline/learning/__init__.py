"""The work behind the feeds: moving accepted events onto the stream (``ingest``), counting
them (``rollup``), learning the examination curve (``examination``) and rebuilding the
cells' feeds (``regenerate``)."""
