"""parley"""
