"""kumoflow.ui"""
