"""The server behind the app: battles, votes, settings, Spaces sync."""
