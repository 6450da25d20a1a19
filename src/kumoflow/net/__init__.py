"""kumoflow.net"""
