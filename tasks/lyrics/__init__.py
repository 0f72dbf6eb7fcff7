"""The lyrics task: a word- or character-level RNN language model that writes lyrics.

Model and batching, one training epoch, evaluation against an interpolated Kneser-Ney baseline
(and a continuous cache, reported beside the model alone), and the registered generator.
"""

STAGES = ("clean", "split", "train", "evaluate", "register")
KEEP_TEXT = False  # later stages read tokens only
UNIT = "lines"  # what a row of the clean table is
