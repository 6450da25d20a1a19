"""kumoflow.api"""
