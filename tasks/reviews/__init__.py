"""The reviews task: a (bi)RNN sentiment classifier over jieba words.

Ingesting a labelled table, model and length-bucketed batching, one training epoch, evaluation
against a TF-IDF + logistic-regression baseline, and the registered predictor.
"""

STAGES = ("ingest", "clean", "split", "train", "evaluate", "register")
KEEP_TEXT = True  # split keeps identical texts together; evaluate lists mistakes as written
UNIT = "reviews"
