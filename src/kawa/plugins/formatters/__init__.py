"""kawa.plugins.formatters"""
