"""The numbers, below every stage that reports them: segmentation metrics (Dice, IoU, precision,
recall; empty-mask aware), surface distances (HD95, ASSD) and classification metrics. Plain numpy and
scipy on masks and labels; ``train``, ``export`` and ``evaluate`` all score with these."""
