"""kawa.engine"""
