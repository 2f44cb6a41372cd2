"""conversations_service"""
