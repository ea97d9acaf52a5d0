"""Lightning callbacks that change how a fit trains (configs put them in ``trainer.callbacks``)."""
