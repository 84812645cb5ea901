"""The fleet simulator: discrete events, iteration-level replicas, the same scheduler."""
