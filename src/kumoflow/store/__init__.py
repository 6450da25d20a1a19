"""kumoflow.store"""
