"""Text processing: cleaning rules, segmentation (jieba / rjieba / characters), the vocabulary."""
