"""messages_service"""
