"""kawa.plugins"""
