"""kawa.plugins.filters"""
