"""Export a plan as a deployable ONNX model, and check that it does what was simulated."""
