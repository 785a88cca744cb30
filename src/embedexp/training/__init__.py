"""Training: the LightningModule, contrastive and MNTP objectives, losses, checkpointing and scale-out strategies."""
