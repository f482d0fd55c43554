"""kawa.testing"""
