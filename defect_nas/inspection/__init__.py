"""Looking inside a trained model: Grad-CAM / saliency maps with a deletion test, and Kim et al.'s
per-layer analyses."""
