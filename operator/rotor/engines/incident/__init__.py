"""engines/incident"""
