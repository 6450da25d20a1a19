"""kumoflow.packet"""
