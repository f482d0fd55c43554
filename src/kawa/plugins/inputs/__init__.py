"""kawa.plugins.inputs"""
