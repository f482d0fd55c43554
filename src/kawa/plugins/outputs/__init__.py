"""kawa.plugins.outputs"""
