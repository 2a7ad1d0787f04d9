"""Files shipped with Lotkeeper: the demo lot layout and a sample config."""
