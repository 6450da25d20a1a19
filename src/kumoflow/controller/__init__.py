"""kumoflow.controller"""
