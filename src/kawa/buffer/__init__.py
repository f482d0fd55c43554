"""kawa.buffer"""
