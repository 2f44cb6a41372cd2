"""realtime_service"""
