"""kumoflow.switch"""
