"""The remote API for drivers (`lotkeeper api`)."""
