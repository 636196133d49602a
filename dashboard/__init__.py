"""The dashboard: a read-only web app over the database and the checkpoint volume.

Pages are rendered on the server (the tables work without JavaScript); plots are Plotly
figures built in Python (dashboard.figures) and drawn by the plotly.min.js the plotly
package bundles, served by the app itself, so the dashboard works offline.
"""
