"""The attack probe: boot an image as a buyer would, with hostile inputs, and judge each vector."""
