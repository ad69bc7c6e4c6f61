"""The server behind the app: Studio, the vote store, prompts, the Results and Eval tabs, settings, sync."""
