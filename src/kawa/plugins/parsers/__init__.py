"""kawa.plugins.parsers"""
