"""kumoflow.apps"""
