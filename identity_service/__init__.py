"""identity_service"""
